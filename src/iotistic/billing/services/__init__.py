"""Billing logic over the database: customers, subscriptions, licences, instance specs, Stripe events, usage."""
