package model

// Qwen2ForCausalLM: Llama's layer with a bias on the q, k and v projections
// (not on o_proj). Its optional sliding window (use_sliding_window, per layer
// from max_window_layers) is refused at load; released Qwen2 models keep it off.
func init() { Register("Qwen2ForCausalLM", Arch{QKVBias: true}) }
