"""Hardware at gate and register level: netlists, exhaustive simulation, costs, multiplier designs."""
