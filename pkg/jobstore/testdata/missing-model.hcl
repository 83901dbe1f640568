job "missing" {
  model "target" {
    path = "testdata/models/no-such-model"
  }
  model "drafter" {
    path = "testdata/models/drafter"
  }

  dataset "prompts" {
    prompts = ["one"]
  }
}
