// Package quantreg computes empirical quantiles and fits linear quantile
// regression, for the predictor's estimators, its evaluation's baselines
// and the simulator's sizing policies.
package quantreg

import (
	"errors"
	"math"

	"gonum.org/v1/gonum/mat"
)

// Linear is a linear quantile regression: f(x) = Coef[0] + sum Coef[j+1] x[j].
type Linear struct {
	Coef []float64 `json:"coef"`
}

// Predict evaluates the regression at x.
func (m *Linear) Predict(x []float64) float64 {
	f := m.Coef[0]
	for j, v := range x {
		f += m.Coef[j+1] * v
	}
	return f
}

// FitLinear fits a linear quantile regression by iteratively reweighted
// least squares: each round solves a weighted least-squares problem whose
// weights q/|r| (above) and (1-q)/|r| (below) make its loss match the
// pinball loss at the current residuals r.
func FitLinear(X [][]float64, y []float64, q float64) (*Linear, error) {
	n := len(y)
	if n == 0 {
		return nil, errors.New("no samples")
	}
	d := len(X[0]) + 1
	if n < 2*d {
		return nil, errors.New("too few samples for a linear model")
	}
	design := mat.NewDense(n, d, nil)
	for i, row := range X {
		design.Set(i, 0, 1)
		for j, v := range row {
			design.Set(i, j+1, v)
		}
	}
	target := mat.NewVecDense(n, y)
	weights := make([]float64, n)
	for i := range weights {
		weights[i] = 1
	}
	beta := mat.NewVecDense(d, nil)
	const eps = 1e-4
	prevLoss := math.Inf(1)
	var best *Linear
	for iter := 0; iter < 60; iter++ {
		if err := weightedLeastSquares(design, target, weights, beta); err != nil {
			if best != nil {
				return best, nil
			}
			return nil, err
		}
		loss := 0.0
		for i := range n {
			r := y[i] - mat.Dot(design.RowView(i), beta)
			loss += pinball(q, y[i], y[i]-r)
			w := q
			if r < 0 {
				w = 1 - q
			}
			weights[i] = w / math.Max(math.Abs(r), eps)
		}
		m := &Linear{Coef: mat.Col(nil, 0, beta)}
		if loss < prevLoss {
			best = m
		}
		if math.Abs(prevLoss-loss) <= 1e-9*math.Max(1, loss) {
			break
		}
		prevLoss = loss
	}
	return best, nil
}

// weightedLeastSquares solves (X'WX + ridge) beta = X'Wy.
func weightedLeastSquares(X *mat.Dense, y *mat.VecDense, w []float64, beta *mat.VecDense) error {
	n, d := X.Dims()
	xtwx := mat.NewSymDense(d, nil)
	xtwy := mat.NewVecDense(d, nil)
	for i := range n {
		row := X.RawRowView(i)
		wi := w[i]
		for a := range d {
			xtwy.SetVec(a, xtwy.AtVec(a)+wi*row[a]*y.AtVec(i))
			for b := a; b < d; b++ {
				xtwx.SetSym(a, b, xtwx.At(a, b)+wi*row[a]*row[b])
			}
		}
	}
	scale := 0.0
	for a := range d {
		scale = math.Max(scale, xtwx.At(a, a))
	}
	for a := range d {
		xtwx.SetSym(a, a, xtwx.At(a, a)+1e-9*scale+1e-12)
	}
	var chol mat.Cholesky
	if ok := chol.Factorize(xtwx); !ok {
		return errors.New("singular system")
	}
	return chol.SolveVecTo(beta, xtwy)
}

// pinball is the quantile (pinball) loss of predicting f for y at level q.
func pinball(q, y, f float64) float64 {
	r := y - f
	if r >= 0 {
		return q * r
	}
	return (q - 1) * r
}
