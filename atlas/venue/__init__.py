"""The pure simulated exchange: the matching engine, the market maker and one symbol's venue."""
