"""Running the daemon: config, the server loop, logs, metrics and systemd."""
