"""The host driver (`latchnic.driver`): the device API over interchangeable
backends (backend.py: model_backend, remote_backend over control.py; the
register-level backend for the gateware slots into the same interface), the
`latchnic` driver subcommands (cli.py), the software NIC (nic.py), `who`
(who.py), the sock_diag daemon (daemon.py) and the network-namespace harness
(netns.py). See docs/driver.md."""
