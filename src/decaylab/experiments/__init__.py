"""Built-in studies: the demo's ten studies (:mod:`decaylab.experiments.demo`) and the reproduction of
Loshchilov & Hutter's decoupling result in two regimes (:mod:`decaylab.experiments.decoupling`,
``decaylab repro decoupling``). The lr × λ maps they use are :mod:`decaylab.maps`."""
