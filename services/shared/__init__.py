"""Runtime every service uses: config, telemetry, JetStream, gRPC server, health, lifecycle."""
