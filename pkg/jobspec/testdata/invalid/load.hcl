job "load-both" {
  model "target" {
    path = "/models/target"
  }
  model "drafter" {
    path = "/models/drafter"
  }
  dataset "synthetic" {}
  load {
    num_prompts = 10
    rate        = 2
  }
}

job "second" {}
