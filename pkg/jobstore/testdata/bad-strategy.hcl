job "bad" {
  model "target" {
    path = "testdata/models/target"
  }
  model "drafter" {
    path = "testdata/models/drafter"
  }

  placement {
    strategy = "ratio"
  }

  dataset "prompts" {
    prompts = ["one"]
  }
}
