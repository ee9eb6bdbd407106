"""Spiking networks: neurons, neuron sites, ANN->SNN conversion and every simulation (chunked,
node by node, early exit, rates)."""
