# Quickstart: a tiny target and drafter on the CPU, eight short prompts.
# It finishes in about ten seconds on two cores (docs/perf.md) and needs no GPU:
#
#   make models            # writes build/models/tiny-target and tiny-drafter
#   bin/controller run hcl/quickstart.hcl
#
# Point TARGET_MODEL / DRAFTER_MODEL elsewhere to try other models.

# -var gamma=N changes the draft length; scripts/sweep.sh runs several:
#   scripts/sweep.sh hcl/quickstart.hcl gamma 1 2 4 6 8
variable "gamma" {
  description = "draft tokens proposed per speculative round"
  default     = 4
}

# -var temperature=0.8 samples instead (no lossless check then: the two modes
# draw different tokens, from the same distribution).
variable "temperature" {
  description = "sampling temperature; 0 is greedy (and checked for lossless output)"
  default     = 0
}

# -var draft_top_k=N (sampled runs): how many of the drafter's most likely ids
# its q keeps, -1 all; the results say how much of its mass that kept.
variable "draft_top_k" {
  description = "ids in the drafter's q at temperature > 0 (-1: its whole distribution)"
  default     = 64
}

job "quickstart" {
  seed = 42

  model "target" {
    path = env("TARGET_MODEL", "build/models/tiny-target")
  }
  model "drafter" {
    path = env("DRAFTER_MODEL", "build/models/tiny-drafter")
  }

  # Both models share device 0 (the worker's CPU device without a GPU).
  placement {
    strategy = "same"
    devices  = "0"
  }

  dataset "prompts" {
    prompts = [
      "Explain in two sentences why the sky is blue.",
      "Write a haiku about a lighthouse in winter.",
      "List three uses for a paperclip besides holding paper.",
      "What is the difference between weather and climate?",
      "Give a short recipe for a cup of tea.",
      "Summarise the plot of a detective story in one paragraph.",
      "How does a bicycle stay upright while moving?",
      "Suggest a name for a friendly robot and say why.",
    ]
  }

  load {
    num_prompts = 8
    # One untimed request per mode first: the first calls load kernels and
    # fill memory pools, which would land on whichever mode runs first (on an
    # H200 the mode that ran first had 17x the mean TTFT without it).
    warmup_requests = 1
  }

  batch {
    enabled = true
    size    = 4
  }

  # temperature 0 makes both modes greedy, so every request is also checked
  # for lossless output (speculative == target token for token).
  generation {
    max_new_tokens = 100
    gamma          = var.gamma
    temperature    = var.temperature
    draft_top_k    = var.draft_top_k
  }

  modes {
    speculative = true
    target_ar   = true
  }

  # Without NVML (a CPU run) the monitor records "available": false.
  gpu_monitor {
    enabled  = true
    interval = "1s"
  }
}
