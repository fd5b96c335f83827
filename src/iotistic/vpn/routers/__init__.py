"""The certificate manager API's routes: thin, over iotistic.vpn.service."""
