job "bad" {
  model "target" {
    path = "/models/target"
  }

  placement {
    strategy = "ratio"
  }

  dataset "prompts" {
    prompts = ["one"]
  }
}
