"""The two stages of a run, receiving built objects from the composition root
(:mod:`adacal.pipeline`): the ANN (:mod:`.ann`: load or train) and the SNN (:mod:`.snn`:
convert, calibrate and evaluate at every T); :mod:`.evaluate` is the test-set pass both use."""
