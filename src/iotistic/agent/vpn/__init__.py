"""The device's VPN client: an OpenVPN child process kept running with the configuration from registration.

- `config`: pure checks and rewrites of the `.ovpn` text (refuses script hooks, applies VPN_SERVER_HOST/PORT).
- `files`: the configuration on disk (mode 0600, replaced atomically).
- `state`: the pure state machine (phases, reconnect counting, restart backoff) behind `/v2/device/vpn`.
- `management`: OpenVPN's management interface (unix socket): line parser and reader.
- `supervisor`: runs `openvpn`, follows its state, restarts it with backoff after it ends.
- `fetch`: asks the cloud for the configuration when registration could not hand it out yet.

The agent never imports the cloud or the certificate manager: it receives the `.ovpn` text over HTTP.
"""
