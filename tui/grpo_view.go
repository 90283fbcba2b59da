package tui

import (
	"fmt"
	"sort"
	"strings"

	"whet/engine"
)

// metricRows are the method-specific rows of the stats panel. GRPO's
// TRL-named metrics (reward, reward_std, rewards/NAME/mean|std, kl,
// clip_ratio/*, completions/*, frac_reward_zero_std) are many and long, so
// they get short labels and one row per idea; other methods' metrics show
// by name.
func metricRows(m map[string]float64) [][2]string {
	_, isGRPO := m["frac_reward_zero_std"]
	if !isGRPO {
		var rows [][2]string
		for _, k := range sortedKeys(m) {
			rows = append(rows, [2]string{trimTo(k, 9), fmt.Sprintf("%.4g", m[k])})
		}
		return rows
	}
	rows := [][2]string{{"reward", fmt.Sprintf("%.3f ±%.3f", m["reward"], m["reward_std"])}}
	var names []string
	for k := range m {
		if name, ok := strings.CutPrefix(k, "rewards/"); ok && strings.HasSuffix(name, "/mean") {
			names = append(names, strings.TrimSuffix(name, "/mean"))
		}
	}
	sort.Strings(names)
	for _, n := range names {
		// 9 cells at most: the gauges pad labels to 10, and a longer one
		// ran into its value ("· exact_a…0.000" for the default reward).
		rows = append(rows, [2]string{"· " + trimTo(n, 7), fmt.Sprintf("%.3f ±%.3f", m["rewards/"+n+"/mean"], m["rewards/"+n+"/std"])})
	}
	if kl, ok := m["kl"]; ok {
		rows = append(rows, [2]string{"kl", fmt.Sprintf("%.4g", kl)})
	}
	rows = append(rows,
		[2]string{"clipped", fmt.Sprintf("%.1f%% of tokens", 100*m["clip_ratio/region_mean"])},
		[2]string{"answers", fmt.Sprintf("%.1f tokens", m["completions/mean_length"])},
		[2]string{"flat", fmt.Sprintf("%.0f%% of groups", 100*m["frac_reward_zero_std"])})
	return rows
}

// sampleReward is a GRPO sample's weighted reward for its header ("" for
// greedy samples, which carry none).
func sampleReward(s engine.SampleEvent) string {
	r, ok := s.Rewards["reward"]
	if !ok {
		return ""
	}
	return fmt.Sprintf(" · reward %.3g", r)
}

// plotValue is what the dashboard's chart follows: the step's headline
// value (engine.HeadlineMetric: GRPO's mean reward, every other method's
// loss), its loss when it has none.
func plotValue(method string, ev engine.StepEvent) float64 {
	if v, ok := ev.Headline(method); ok {
		return v
	}
	return ev.Loss
}
