"""Everything that runs compiled runners: benchmarks against peers, sweeps, and the device profile's fit to traced calls."""
