"""What a trained net costs (NeuroBench-style metrics), its export to NIR / npz, and the benchmarks."""
