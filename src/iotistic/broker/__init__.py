"""Mosquitto enforcement: the MQTT accounts and ACLs kept in the cloud database, made the broker's rules.

`files` renders Mosquitto's password_file and acl_file from a snapshot of the accounts (pure code); `sync` reads
the snapshot from the database, writes the files atomically when they change and makes the broker reload them
(SIGHUP), once or as a long-lived process beside the broker. `testing` starts a private Mosquitto with the
project's configuration (deploy/mosquitto/mosquitto.conf) for tests and benchmarks.
"""
