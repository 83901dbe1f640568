package tinymodel

// Corpus trains the tiny models' byte-level BPE tokenizer: English prose,
// code and Chinese, so quickstart prompts of each kind encode to real merges.
var Corpus = []string{
	`Speculative decoding speeds up inference of large language models. A small drafter model proposes
several tokens, and the large target model verifies all of them in a single forward pass. Tokens the
target agrees with are kept; at the first disagreement the target's own choice is used instead, so the
output is exactly what the target alone would have produced. The speedup depends on how often the
drafter is right, on the number of drafted tokens, and on how much cheaper the drafter is to run.`,
	`The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step.
To be or not to be, that is the question. All that glitters is not gold. The early bird catches the worm.
Knowledge is power, and time is money. Actions speak louder than words. Practice makes perfect.`,
	`Benchmarks report the time to first token, the time per output token, the inter-token latency and the
end-to-end latency of every request, with the mean, the median, the standard deviation and the 90th,
95th and 99th percentiles. Throughput is measured in requests per second and output tokens per second.
GPU power, energy, utilisation, memory and temperature are sampled once per second.`,
	`Explain the difference between a process and a thread. Write a short poem about the sea. Summarise
the plot of a famous novel in three sentences. What are the benefits of regular exercise? Describe how
a transformer model computes attention. Give me a recipe for a simple tomato soup. How do vaccines work?
Translate the following sentence into French. What is the capital of Australia? Tell me a joke.`,
	`func main() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 10; i++ {
		fmt.Println("hello, world", i)
	}
	if err := run(ctx); err != nil {
		log.Fatal(err)
	}
}`,
	`def fibonacci(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a

class Model:
    def __init__(self, config):
        self.config = config
        self.layers = [Layer(config) for _ in range(config.num_layers)]

    def forward(self, input_ids, cache=None):
        hidden = self.embed(input_ids)
        for layer in self.layers:
            hidden = layer(hidden, cache)
        return self.head(self.norm(hidden))`,
	`SELECT name, count(*) AS total FROM requests WHERE status = 'done' GROUP BY name ORDER BY total DESC;`,
	`机器学习模型的推理速度非常重要。大型语言模型在生成文本时，每一步只产生一个词元。推测解码使用一个小模型
先提出几个候选词元，再由大模型一次性验证。你好，世界！今天天气很好，我们去公园散步吧。请用三句话总结这篇文章。`,
	`Numbers and symbols: 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14159 2.71828 42 -1 +1 = < > ( ) [ ] { } # @ & * % $ !
The year 2024 had 366 days. Version 1.2.3 was released on 2025-01-15 at 09:30 UTC.`,
}
