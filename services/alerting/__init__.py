"""The alerter service: the I/O shell around the pure alerting logic in `services.alerts`.

`store` (SQL, bound parameters, PostgreSQL and SQLite), `engine` (one transaction per
micro-batch: buckets → detector → lifecycle → alerts, outbox, checkpoint), `service` (the
Kafka loop of `finsent alerter`), `metrics` (served by services.probes), `config`
(everything built from `Settings` in one place). Imports nothing heavy: no torch, no faust.
"""
