"""The live probe: `Probe(model, run=..., every=...)`, then `probe.step(...)` once per training step.

Readings are small pure functions in `advisor.probe.metrics`; the run store is `advisor.runstore`.
Lightning and Hugging Face callbacks live in `advisor.probe.integrations` (imported only on use).
`probe` decides when to read (the grid, the overhead budget in `timing`, the short path of ordinary
steps); `arguments` says how step() arguments are read, `sampled` reads a sampled step (tensor
statistics, activations from `hooks`, parameters from `parameters`, `hardware`), `distributed` and
`sharding` reduce over ranks, `guard` turns failures into disabled readings, `profile` writes the
run's meta, `writer` queues readings and writes the store from a background thread.

Reading names written to the store, declared once in `advisor.reading_names` (layers are qualified
module names without `_orig_mod.` / `module.` wrapper prefixes; scalars every step, everything else
on sampled steps):

- scalars: the keyword name (`loss`, `lr`, `val_loss`, ...)
- representations (`embeddings`, or `embedding_names=`; on sampled steps every
  `representation_every` steps, by default max(every, 5), so every=1 reads them every 5th step and
  everything else every step; `representation_every=1` reads them on every sampled step): `{name}/effective_rank`, `effective_rank_ratio`,
  `top1_variance_share`, `top5_variance_share`, `offdiag_cov_energy`, `dim_std_mean`, `dead_dim_share`,
  `l2norm_std`, `l2norm_std_ref`, `mean_pairwise_cosine`, `norm_max_median`, `norm_cv`, `dim`
- `views=(a, b)`: `views/cosine` and the representation readings of `a` under `views/`
- activations: `act/{layer}/zero_fraction`, `dead_unit_share` (ReLU/ReLU6 only: GELU, SiLU and leaky
  outputs at or below zero still pass gradient), `saturation_fraction` (tanh/sigmoid-like), `std`,
  `sample_similarity`; each layer's activation kind is in the meta key `activation_kinds`
- gradients: `grad/global_norm`, `grad/{layer}/norm`, `grad/first_last_ratio`, `grad/nonfinite_count`,
  `grad/zero_share`, `grad/min_layer_norm`
- weights and updates: `weight/{layer}/norm`, `weight/{layer}/norm_growth`, `weight/global_norm`,
  `update/{layer}/ratio`, `update/max_ratio`, `update/frozen_share`, `update/frozen_params`
- outputs: `logits/entropy`, `logits/entropy_ratio`, `logits/top_class_share`, `logits/confidence`,
  `logits/accuracy`, `logits/num_classes`; `codes/usage_share`, `codes/perplexity`,
  `codes/perplexity_ratio`; `attention/entropy`, `attention/entropy_ratio` (each row's entropy over
  the log of the keys it may see: all of them, or up to its own position under a causal mask),
  `attention/causal_share`; `amp/loss_scale` (a GradScaler passed as `scaler=`)
- hardware and time: `gpu/mem_allocated_gb`, `gpu/mem_reserved_gb`, `gpu/mem_peak_gb`, `gpu/mem_total_gb`
  (GiB), `gpu/utilization` (%), `gpu/temperature_c`, `gpu/power_w`; `time/step_s` (mean over the steps
  since the last sample), `time/data_wait_share`
- any other tensor `x`: `x/mean`, `x/std`, `x/norm`, `x/nonfinite` (a list of tensors: `x.0/...`)
- every tensor input: `nonfinite/{name}` (count of NaN/Inf values, 0 included)

The store's meta also says what the run has (`modules`: attention, VQ and norm layers; `tensors`: what
each step() argument was read as; `amp`; `distributed`), a `run_id`, and the writer's pid, host and
heartbeat, from which `advisor.runstore.run_state` tells a live run from a stopped one.
"""

from advisor.probe.probe import Probe

__all__ = ["Probe"]
