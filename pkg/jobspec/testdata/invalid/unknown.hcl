jobs "typo" {}

job "unknown" {
  model "target" {
    path = "/models/target"
    layers = 36
  }
  model "helper" {
    path = "/models/helper"
  }
  dataset "synthetic" {
    prompts = ["hi"]
  }
  load {
    num_prompt = 3
  }
  sampling {}
  modes {
    speculative = false
  }
}
