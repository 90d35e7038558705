"""Built-in studies: the demo's six studies (:mod:`decaylab.experiments.demo`) and reproductions."""
