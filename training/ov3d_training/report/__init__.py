"""The accuracy report: zero-shot ScanNet metrics of every pooling variant, GGP sweeps, affinity quality on mOSD."""
