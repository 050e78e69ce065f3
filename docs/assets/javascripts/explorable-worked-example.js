// The worked example, live (BatchNorm page, under Algorithm 1's picture). Three parts, each
// recomputed on every edit with the formulas of the paper's Algorithm 1 and Section 3:
//  1. the 4 × 2 batch, γ, β and ε as fields, and μ_B, σ²_B, x̂ and y;
//  2. one example x* normalised inside two batches (training mode), and with the running
//     statistics those two batches leave (evaluation mode);
//  3. for a ∂ℓ/∂y the reader types, the three paths by which each x_i reaches the loss
//     (directly, through μ_B, through σ²_B) and their sum ∂ℓ/∂x_i.
// The defaults are the ones the build embedded from batch_norm_pictures.json, where the Python
// module computed the same numbers; the browser test (tests/test_explorables.py) checks the
// two agree, here and for batches it types in.
(function () {
  var X = window.Explorable;
  var h = X.h;

  // One feature of Algorithm 1: batch statistics, normalised values and outputs
  function normalise(column, gamma, beta, eps) {
    var m = column.length;
    var mean = column.reduce(function (a, v) { return a + v; }, 0) / m;
    // Biased variance (divide by m), as Algorithm 1 normalises with
    var variance = column.reduce(function (a, v) {
      return a + (v - mean) * (v - mean);
    }, 0) / m;
    var inv = 1 / Math.sqrt(variance + eps);
    var xHat = column.map(function (v) { return (v - mean) * inv; });
    return {mean: mean, variance: variance, inv: inv, xHat: xHat,
            y: xHat.map(function (v) { return gamma * v + beta; })};
  }

  // Section 3's chain rule, one term per path. The σ²_B path includes σ²_B's own use of
  // μ_B, whose term is Σ_j (x_j − μ_B) = 0, so it is left out.
  function paths(column, stats, gamma, gradY) {
    var m = column.length;
    var gradXHat = gradY.map(function (g) { return g * gamma; });
    var sumGrad = gradXHat.reduce(function (a, g) { return a + g; }, 0);
    var sumGradCentred = gradXHat.reduce(function (a, g, j) {
      return a + g * (column[j] - stats.mean);
    }, 0);
    var gradMean = -stats.inv * sumGrad;
    var gradVar = -0.5 * Math.pow(stats.inv, 3) * sumGradCentred;
    return column.map(function (v, i) {
      var direct = gradXHat[i] * stats.inv;
      var viaMean = gradMean / m;
      var viaVar = gradVar * 2 * (v - stats.mean) / m;
      return {direct: direct, viaMean: viaMean, viaVar: viaVar,
              gradX: direct + viaMean + viaVar};
    });
  }

  // A number field with its own (screen-reader) label
  function field(key, value, label) {
    var id = X.uid(key);
    var input = h('input', {type: 'number', step: 'any', id: id, value: String(value),
                            'data-key': key, inputmode: 'decimal'});
    return [h('label', {'for': id, 'class': 'xp-sr', text: label}), input];
  }

  function cell(children, attrs) { return h('td', attrs || {}, children); }

  function out(key) { return h('output', {'data-key': key}); }

  function init(root, data) {
    var we = data.worked_example, te = data.train_eval, gp = data.gradient_paths;
    var m = we.x.length, features = we.x[0].length;
    var outputs = {};
    var inputs = {};

    function featureHeads(first) {
      var row = [h('th', {scope: 'col', text: first})];
      for (var k = 0; k < features; k++) {
        row.push(h('th', {scope: 'col', 'class': 'xp-f' + k,
                          text: 'feature ' + (k + 1)}));
      }
      return h('tr', {}, row);
    }

    // 1. The batch and Algorithm 1
    var batchRows = [featureHeads('')];
    for (var i = 0; i < m; i++) {
      var cells = [h('th', {scope: 'row'}, ['x', h('sub', {text: String(i + 1)})])];
      for (var k = 0; k < features; k++) {
        cells.push(cell(field('x-' + i + '-' + k, we.x[i][k],
                                   'x, example ' + (i + 1) + ', feature ' + (k + 1))));
      }
      batchRows.push(h('tr', {}, cells));
    }
    [['gamma', 'γ'], ['beta', 'β']].forEach(function (p) {
      var cells = [h('th', {scope: 'row', text: p[1]})];
      for (var k = 0; k < features; k++) {
        cells.push(cell(field(p[0] + '-' + k, we[p[0]][k],
                                   p[1] + ', feature ' + (k + 1))));
      }
      batchRows.push(h('tr', {}, cells));
    });
    [['mean', ['μ', h('sub', {text: 'B'})]], ['var', ['σ', h('sup', {text: '2'}),
                                                      h('sub', {text: 'B'})]]]
      .forEach(function (p) {
        var cells = [h('th', {scope: 'row'}, p[1])];
        for (var k = 0; k < features; k++) cells.push(cell([out(p[0] + '-' + k)]));
        batchRows.push(h('tr', {}, cells));
      });

    function resultTable(name, caption) {
      var rows = [featureHeads('')];
      for (var i = 0; i < m; i++) {
        var cells = [h('th', {scope: 'row', text: String(i + 1)})];
        for (var k = 0; k < features; k++) {
          cells.push(cell([out(name + '-' + i + '-' + k)]));
        }
        rows.push(h('tr', {}, cells));
      }
      return h('table', {'class': 'xp-table'},
               [h('caption', {}, caption)].concat(rows));
    }

    var eps = field('eps', we.eps, 'ε, added to the variance');
    eps[1].className = 'xp-wide';
    var part1 = h('div', {'class': 'xp-part'}, [
      h('p', {'class': 'xp-title', text: 'Try it: edit the batch, γ, β or ε'}),
      h('div', {'class': 'xp-row'}, [
        h('table', {'class': 'xp-table'}, [h('caption', {text: 'the batch, m = ' + m}),
                        h('tbody', {}, batchRows)]),
        h('div', {}, [
          resultTable('xhat', ['x̂ = (x − μ', h('sub', {text: 'B'}), ') / √(σ',
                               h('sup', {text: '2'}), h('sub', {text: 'B'}), ' + ε)']),
          resultTable('y', ['y = γ x̂ + β'])
        ])
      ]),
      h('div', {'class': 'xp-control'},
        [h('span', {'aria-hidden': 'true', text: 'ε ='})].concat(eps))
    ]);

    // 2. One example in two batches. The running statistics start at 0 and 1 and take each
    // batch with the picture's momentum α; the variance they keep is the unbiased one.
    var star = field('star', te.x_star, 'x*, the example in both batches');
    var others = te.batches.map(function (batch, n) {
      return batch.slice(1).map(function (v, j) {
        return field('batch-' + n + '-' + j, v, 'batch ' + 'AB'[n] + ', companion ' +
                          (j + 1));
      });
    });
    function batchLine(n) {
      var parts = [h('th', {scope: 'row', text: 'batch ' + 'AB'[n]}),
                   cell(['x*,']), cell(others[n][0]), cell(others[n][1]),
                   cell(['→ x̂* = ', out('train-' + n)])];
      return h('tr', {}, parts);
    }
    var part2 = h('div', {'class': 'xp-part'}, [
      h('p', {'class': 'xp-title', text: 'One example in two batches'}),
      h('div', {'class': 'xp-control'},
        [h('span', {'aria-hidden': 'true', text: 'x* ='})].concat(star)),
      h('table', {'class': 'xp-table'}, [
        h('caption', {text: 'training mode: each batch’s own statistics'}),
        h('tbody', {}, [batchLine(0), batchLine(1)])]),
      h('p', {}, ['evaluation mode, after both batches with α = ' + te.momentum + ': ',
                  'E[x] = ', out('running-mean'), ', Var[x] = ', out('running-var'),
                  ', so x* → ', out('eval'), ' in either batch']),
    ]);

    // 3. The three gradient paths, one table per feature
    function pathTable(k) {
      var head = h('tr', {}, [
        h('th', {scope: 'col', text: 'i'}),
        h('th', {scope: 'col'}, ['∂ℓ/∂y', h('sub', {text: 'i'})]),
        h('th', {scope: 'col', 'class': 'xp-direct', text: 'direct'}),
        h('th', {scope: 'col', 'class': 'xp-mean'}, ['via μ', h('sub', {text: 'B'})]),
        h('th', {scope: 'col', 'class': 'xp-var'}, ['via σ', h('sup', {text: '2'}),
                                                   h('sub', {text: 'B'})]),
        h('th', {scope: 'col'}, ['= ∂ℓ/∂x', h('sub', {text: 'i'})])
      ]);
      var rows = [head];
      for (var i = 0; i < m; i++) {
        rows.push(h('tr', {}, [
          h('th', {scope: 'row', text: String(i + 1)}),
          cell(field('dy-' + i + '-' + k, gp.grad_y[i][k],
                          '∂ℓ/∂y, example ' + (i + 1) + ', feature ' + (k + 1))),
          cell([out('direct-' + i + '-' + k)], {'class': 'xp-direct'}),
          cell([out('via_mean-' + i + '-' + k)], {'class': 'xp-mean'}),
          cell([out('via_var-' + i + '-' + k)], {'class': 'xp-var'}),
          cell([out('grad_x-' + i + '-' + k)])
        ]));
      }
      return h('table', {'class': 'xp-table'}, [
        h('caption', {'class': 'xp-f' + k, text: 'feature ' + (k + 1)}),
        h('tbody', {}, rows)]);
    }
    var tables = [];
    for (var f = 0; f < features; f++) tables.push(pathTable(f));
    var part3 = h('div', {'class': 'xp-part'}, [
      h('p', {'class': 'xp-title', text: 'The three paths of the gradient'}),
      h('p', {'class': 'xp-note',
              text: 'Type a gradient ∂ℓ/∂y. Each row is ∂ℓ/∂xᵢ split by path; the ' +
                    'statistics pass a gradient to every example, even one whose own ' +
                    '∂ℓ/∂y is 0.'}),
      h('div', {'class': 'xp-row'}, tables)
    ]);

    root.appendChild(part1);
    root.appendChild(part2);
    root.appendChild(part3);
    root.querySelectorAll('[data-key]').forEach(function (el) {
      (el.tagName === 'INPUT' ? inputs : outputs)[el.getAttribute('data-key')] = el;
    });

    function value(key) { return X.read(inputs[key]); }

    function update() {
      var epsilon = value('eps');
      for (var k = 0; k < features; k++) {
        var column = [], gradY = [];
        for (var i = 0; i < m; i++) {
          column.push(value('x-' + i + '-' + k));
          gradY.push(value('dy-' + i + '-' + k));
        }
        var stats = normalise(column, value('gamma-' + k), value('beta-' + k), epsilon);
        X.show(outputs['mean-' + k], stats.mean);
        X.show(outputs['var-' + k], stats.variance);
        var split = paths(column, stats, value('gamma-' + k), gradY);
        for (i = 0; i < m; i++) {
          X.show(outputs['xhat-' + i + '-' + k], stats.xHat[i]);
          X.show(outputs['y-' + i + '-' + k], stats.y[i]);
          X.show(outputs['direct-' + i + '-' + k], split[i].direct);
          X.show(outputs['via_mean-' + i + '-' + k], split[i].viaMean);
          X.show(outputs['via_var-' + i + '-' + k], split[i].viaVar);
          X.show(outputs['grad_x-' + i + '-' + k], split[i].gradX);
        }
      }
      // Two batches of x* and its companions, one unit with γ = 1, β = 0 as in the picture
      var xStar = value('star');
      var runningMean = 0, runningVar = 1;
      var alpha = te.momentum;
      for (var n = 0; n < 2; n++) {
        var batch = [xStar, value('batch-' + n + '-0'), value('batch-' + n + '-1')];
        var stats2 = normalise(batch, 1, 0, te.eps);
        X.show(outputs['train-' + n], stats2.xHat[0]);
        var size = batch.length;
        runningMean = (1 - alpha) * runningMean + alpha * stats2.mean;
        runningVar = (1 - alpha) * runningVar +
                     alpha * stats2.variance * size / (size - 1);
      }
      X.show(outputs['running-mean'], runningMean);
      X.show(outputs['running-var'], runningVar);
      X.show(outputs['eval'], (xStar - runningMean) / Math.sqrt(runningVar + te.eps));
    }

    root.addEventListener('input', update);
    update();
  }

  X.register('worked-example', init);
})();
