"""LightningDataModules. Each yields batches (x [T, B, ...] after encoding, y [B])."""
