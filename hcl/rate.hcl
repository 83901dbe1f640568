# Rate mode (mode 2): requests arrive as a Poisson process at 2 per second
# for one minute, as vLLM's benchmark does with --request-rate. Latency under
# load, not just per request, decides whether speculation pays off.
#
#   bin/controller run hcl/rate.hcl -var rate=4 -var duration=2m

variable "rate" {
  description = "Requests per second."
  default     = 2.0
}

variable "duration" {
  description = "How long requests keep arriving (\"60s\", \"5m\" or seconds)."
  default     = "60s"
}

job "rate-poisson" {
  model "target" {
    path = env("TARGET_MODEL", "/models/Qwen3-8B")
  }
  model "drafter" {
    path = env("DRAFTER_MODEL", "/models/Qwen3-1.7B")
  }

  placement {
    strategy = "multi_gpu_ratio"
  }

  dataset "sharegpt" {
    dir = env("SHAREGPT_DIR", "")
  }

  load {
    rate     = var.rate
    duration = var.duration
    arrival  = "poisson" # or "constant", or "gamma" with burstiness
    # Cap in-flight requests so an overloaded run queues instead of piling up.
    max_concurrency = 32
    warmup_requests = 2
  }

  generation {
    max_new_tokens = 128
    gamma          = 4
  }
}
