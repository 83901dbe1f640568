# Two hosts with four GPUs each. Start a worker on each host against the same
# NATS server (its --name must match the host names below), then submit:
#
#   worker --nats nats://controller:4222 --name gpu-node-1   # on the first host
#   worker --nats nats://controller:4222 --name gpu-node-2   # on the second host
#   controller submit hcl/multi-host.hcl --nats nats://controller:4222 --wait
#
# multi_gpu_ratio hands out devices in the order listed: the target takes the
# first six (all of gpu-node-1 and two of gpu-node-2), the drafter the last
# two. The target runs as two pipeline stages, one per host, that pass
# hidden states between them over NATS; its layers split by device memory.

job "multi-host" {
  seed = 42

  model "target" {
    path   = env("TARGET_MODEL", "/models/Qwen3-8B")
    gpus   = 6
    stages = 2
  }
  model "drafter" {
    path = env("DRAFTER_MODEL", "/models/Qwen3-1.7B")
    gpus = 2
  }

  placement {
    strategy = "multi_gpu_ratio"
    devices  = "gpu-node-1:0-3,gpu-node-2:0-3"
  }

  dataset "sharegpt" {
    dir = env("SHAREGPT_DIR", "/data/sharegpt")
  }

  load {
    num_prompts     = 200
    max_concurrency = 16
    warmup_requests = 2
  }

  batch {
    enabled    = true
    size       = 8
    max_length = 1024
  }

  generation {
    max_new_tokens = 128
    gamma          = 4
  }
}
