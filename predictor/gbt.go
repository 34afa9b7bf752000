package predictor

import (
	"math/rand/v2"
	"slices"
	"sort"
)

// gbtModel is a gradient-boosted ensemble of regression trees fitted to the
// pinball loss, the way the reference libraries fit quantile boosting: each
// tree is grown on the loss's gradient with a unit hessian, then each of its
// leaves is reset to the q-quantile of the residuals that fall in it.
type gbtModel struct {
	Base  float64 `json:"base"`
	Rate  float64 `json:"rate"`
	Trees []tree  `json:"trees"`
}

// tree is a binary tree in an array; node 0 is the root.
type tree []treeNode

type treeNode struct {
	// Feature is the feature compared at a split, -1 at a leaf.
	Feature int `json:"f"`
	// Threshold: values <= Threshold go left.
	Threshold float64 `json:"t,omitempty"`
	Left      int32   `json:"l,omitempty"`
	Right     int32   `json:"r,omitempty"`
	// Value is a leaf's output.
	Value float64 `json:"v,omitempty"`
}

func (t tree) predict(x []float64) float64 {
	i := 0
	for {
		n := &t[i]
		if n.Feature < 0 {
			return n.Value
		}
		if x[n.Feature] <= n.Threshold {
			i = int(n.Left)
		} else {
			i = int(n.Right)
		}
	}
}

func (m *gbtModel) predict(x []float64) float64 {
	f := m.Base
	for _, t := range m.Trees {
		f += m.Rate * t.predict(x)
	}
	return f
}

// gbtParams are the boosting hyperparameters.
type gbtParams struct {
	Trees     int
	Depth     int
	Rate      float64
	MinLeaf   int
	Bins      int
	Subsample float64
	Seed      uint64
}

func defaultGBTParams(n int) gbtParams {
	return gbtParams{Trees: 60, Depth: 3, Rate: 0.1, MinLeaf: max(8, n/100), Bins: 32, Subsample: 0.7, Seed: 1}
}

// gbtTrainer holds the binned data of one fit.
type gbtTrainer struct {
	p       gbtParams
	q       float64
	n, d    int
	edges   [][]float64 // per feature, ascending split candidates
	bins    [][]uint8   // per feature, per sample: the bin index
	resid   []float64
	grad    []float64
	hist    []histBin
	scratch []float64
}

type histBin struct {
	g float64
	n int
}

// fitGBT fits the ensemble to rows X (n x d) and targets y.
func fitGBT(X [][]float64, y []float64, q float64, p gbtParams) *gbtModel {
	n := len(y)
	t := &gbtTrainer{p: p, q: q, n: n}
	if n > 0 {
		t.d = len(X[0])
	}
	t.binFeatures(X)
	base := quantile(slices.Clone(y), q)
	f := make([]float64, n)
	for i := range f {
		f[i] = base
	}
	m := &gbtModel{Base: base, Rate: p.Rate}
	t.resid = make([]float64, n)
	t.grad = make([]float64, n)
	t.hist = make([]histBin, p.Bins+1)
	rng := rand.New(rand.NewPCG(p.Seed, uint64(n)))
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	sampleSize := max(1, int(float64(n)*p.Subsample))
	for range p.Trees {
		for i := range n {
			r := y[i] - f[i]
			t.resid[i] = r
			if r > 0 {
				t.grad[i] = -q
			} else {
				t.grad[i] = 1 - q
			}
		}
		if sampleSize < n {
			rng.Shuffle(n, func(a, b int) { all[a], all[b] = all[b], all[a] })
		}
		rows := slices.Clone(all[:sampleSize])
		tr := tree{}
		t.grow(&tr, rows, 0)
		if len(tr) == 1 && tr[0].Value == 0 {
			break // nothing left to learn
		}
		for i := range n {
			f[i] += p.Rate * tr.predict(X[i])
		}
		m.Trees = append(m.Trees, tr)
	}
	return m
}

// binFeatures chooses up to Bins-1 split candidates per feature from the
// data's quantiles and maps every value to its bin.
func (t *gbtTrainer) binFeatures(X [][]float64) {
	t.edges = make([][]float64, t.d)
	t.bins = make([][]uint8, t.d)
	col := make([]float64, t.n)
	for j := range t.d {
		for i := range t.n {
			col[i] = X[i][j]
		}
		sorted := slices.Clone(col)
		slices.Sort(sorted)
		uniq := slices.Compact(sorted)
		var edges []float64
		if len(uniq) <= t.p.Bins {
			for k := 0; k+1 < len(uniq); k++ {
				edges = append(edges, (uniq[k]+uniq[k+1])/2)
			}
		} else {
			all := slices.Clone(col)
			slices.Sort(all)
			for k := 1; k < t.p.Bins; k++ {
				e := all[k*len(all)/t.p.Bins]
				if len(edges) == 0 || e > edges[len(edges)-1] {
					edges = append(edges, e)
				}
			}
		}
		t.edges[j] = edges
		b := make([]uint8, t.n)
		for i, v := range col {
			// The bin is the number of edges below v: values <= edges[k]
			// have bins <= k.
			b[i] = uint8(sort.SearchFloat64s(edges, v))
		}
		t.bins[j] = b
	}
}

// grow adds the subtree for rows to tr and returns its index.
func (t *gbtTrainer) grow(tr *tree, rows []int, depth int) int32 {
	idx := int32(len(*tr))
	*tr = append(*tr, treeNode{Feature: -1})
	if depth < t.p.Depth && len(rows) >= 2*t.p.MinLeaf {
		if feature, split, ok := t.bestSplit(rows); ok {
			// Partition rows in place: bins <= split go left.
			b := t.bins[feature]
			i, j := 0, len(rows)-1
			for i <= j {
				if int(b[rows[i]]) <= split {
					i++
				} else {
					rows[i], rows[j] = rows[j], rows[i]
					j--
				}
			}
			left := t.grow(tr, rows[:i], depth+1)
			right := t.grow(tr, rows[i:], depth+1)
			(*tr)[idx] = treeNode{Feature: feature, Threshold: t.edges[feature][split], Left: left, Right: right}
			return idx
		}
	}
	// A leaf: the q-quantile of its residuals.
	t.scratch = t.scratch[:0]
	for _, r := range rows {
		t.scratch = append(t.scratch, t.resid[r])
	}
	(*tr)[idx].Value = quantile(t.scratch, t.q)
	return idx
}

// bestSplit finds the split with the largest gain G_L^2/n_L + G_R^2/n_R -
// G^2/n, the Newton gain with a unit hessian.
func (t *gbtTrainer) bestSplit(rows []int) (feature, split int, ok bool) {
	var total float64
	for _, r := range rows {
		total += t.grad[r]
	}
	n := len(rows)
	parent := total * total / float64(n)
	bestGain := 1e-12
	for j := range t.d {
		edges := t.edges[j]
		if len(edges) == 0 {
			continue
		}
		hist := t.hist[:len(edges)+1]
		clear(hist)
		b := t.bins[j]
		for _, r := range rows {
			h := &hist[b[r]]
			h.g += t.grad[r]
			h.n++
		}
		var gl float64
		nl := 0
		for k := 0; k < len(edges); k++ {
			gl += hist[k].g
			nl += hist[k].n
			nr := n - nl
			if nl < t.p.MinLeaf {
				continue
			}
			if nr < t.p.MinLeaf {
				break
			}
			gr := total - gl
			gain := gl*gl/float64(nl) + gr*gr/float64(nr) - parent
			if gain > bestGain {
				bestGain, feature, split, ok = gain, j, k, true
			}
		}
	}
	return feature, split, ok
}
