package model

// MistralForCausalLM: Llama's layer plus a sliding attention window
// (sliding_window in config.json; null in Mistral v0.2 and later).
func init() { Register("MistralForCausalLM", Arch{Window: true}) }
