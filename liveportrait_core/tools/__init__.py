"""Tools around the engine: ``doctor``, the settings reference generator, machine facts and the benchmarks."""
