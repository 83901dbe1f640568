job "models" {
  output_dir = ""
  model "drafter" {
    path = ""
  }
  model "drafter" {
    path = "/models/other"
  }
  dataset "prompts" {
    prompts = []
  }
  dataset "synthetic" {}
  modes {
    speculative = false
    target_ar   = false
  }
}
