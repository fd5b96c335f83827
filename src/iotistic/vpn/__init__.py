"""The VPN: PKI (CA, server and device certificates, CRL), OpenVPN configuration, per-customer addressing and the
certificate manager API (port 8080)."""
