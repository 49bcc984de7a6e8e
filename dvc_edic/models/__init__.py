"""Network architectures. Entropy models live apart, in :mod:`dvc_edic.entropy`."""
