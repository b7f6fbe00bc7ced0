"""What the console computes: P&L, the risk preview, market metrics and history, the worker's telemetry."""
