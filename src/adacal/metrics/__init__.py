"""Operation counting: synaptic operations (SOPs), MACs and energy."""
