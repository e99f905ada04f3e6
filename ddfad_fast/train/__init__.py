"""Training: the nets (:mod:`~ddfad_fast.train.models`), the student unroll and its exact constant-memory
reverse sweep (:mod:`~ddfad_fast.train.unroll`, :mod:`~ddfad_fast.train.mtt` for any nn.Module), expert
trajectories (:mod:`~ddfad_fast.train.experts`), the distillation loop (:mod:`~ddfad_fast.train.distill`),
evaluation by training fresh nets (:mod:`~ddfad_fast.train.evaluate`) and the memory plans of all of them
(:mod:`~ddfad_fast.train.memory`)."""
