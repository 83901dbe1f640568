job "syntax" {
  model "target" {
    path = "/models/target"
  }
  load {
    num_prompts = = 3
  }
}
