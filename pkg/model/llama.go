package model

// LlamaForCausalLM: pre-norm decoder, GQA, SwiGLU MLP, RoPE (with llama3
// scaling for Llama 3.1+); attention_bias and mlp_bias come from config.json.
func init() { Register("LlamaForCausalLM", Arch{}) }
