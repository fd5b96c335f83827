"""Per-customer instances on Kubernetes: what one instance is (`spec`), the Helm values built from it
(`values`), and the deployer that installs, upgrades and removes it."""
