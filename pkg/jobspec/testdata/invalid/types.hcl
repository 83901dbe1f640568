job "types" {
  seed = 1.5
  model "target" {
    path = ["/models/target"]
  }
  model "drafter" {
    path = "/models/drafter"
  }
  dataset "sharegpt" {
    dir   = "/data"
    files = "sharegpt_gpt4.jsonl"
  }
  load {
    num_prompts = "ten"
  }
  generation {
    gamma      = 2.5
    ignore_eos = "yes"
  }
  gpu_monitor {
    interval = "1 second"
  }
}
