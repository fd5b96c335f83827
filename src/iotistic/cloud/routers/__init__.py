"""HTTP routers: parse, authorise, call a service, shape the reply. No business logic here."""
