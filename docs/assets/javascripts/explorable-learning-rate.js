// The learning-rate sweep, live (learning-rate experiment page). A slider over the rates the
// experiment measured shows every seed's test-accuracy curve at that rate, with and without
// batch normalization, for the ReLU or the sigmoid network: the curves of
// learning_rate.json and learning_rate_sigmoid.json, embedded at build time. Nothing is
// simulated: a run that diverged ends where its record ends, and a cross marks it there.
(function () {
  var X = window.Explorable;
  var h = X.h, s = X.s;
  var NAMES = {no_bn: 'without BN', bn: 'with BN'};

  function init(root, data) {
    var width = 440, height = 240;
    var left = 40, right = 10, top = 10, bottom = 34;
    var lastStep = 0;
    ['relu', 'sigmoid'].forEach(function (act) {
      ['no_bn', 'bn'].forEach(function (name) {
        data[act].runs[name].forEach(function (run) {
          lastStep = Math.max(lastStep, run.steps[run.steps.length - 1]);
        });
      });
    });
    function px(step) { return left + step / lastStep * (width - left - right); }
    function py(acc) { return top + (1 - acc) * (height - top - bottom); }

    // The plot's scale, for the browser test to read the points back from the drawing
    var svg = s('svg', {viewBox: '0 0 ' + width + ' ' + height, role: 'img',
                        'data-x0': px(0), 'data-x1': px(lastStep),
                        'data-last-step': lastStep,
                        'data-y0': py(0), 'data-y1': py(1)});
    [0, 0.25, 0.5, 0.75, 1].forEach(function (acc) {
      svg.appendChild(s('line', {x1: left, x2: width - right, y1: py(acc), y2: py(acc),
                                 'class': 'xp-gridline'}));
      svg.appendChild(s('text', {x: left - 6, y: py(acc) + 4, 'text-anchor': 'end',
                                 text: Math.round(acc * 100) + '%'}));
    });
    for (var step = 0; step <= lastStep; step += lastStep / 3) {
      svg.appendChild(s('text', {x: px(step), y: height - bottom + 15,
                                 'text-anchor': 'middle',
                                 text: String(Math.round(step))}));
    }
    svg.appendChild(s('text', {x: (left + width - right) / 2, y: height - 3,
                               'text-anchor': 'middle', text: 'training step'}));
    var curves = s('g');
    svg.appendChild(curves);

    var sliderId = X.uid('rate');
    var rates = data.relu.rates;
    var start = Math.max(0, rates.indexOf(0.1));
    var slider = h('input', {type: 'range', id: sliderId, min: '0',
                             max: String(rates.length - 1), step: '1',
                             value: String(start)});
    var rateText = h('output', {'for': sliderId});
    var group = X.uid('activation');
    var radios = ['relu', 'sigmoid'].map(function (act, n) {
      var id = X.uid(act);
      var input = h('input', {type: 'radio', name: group, id: id, value: act});
      input.checked = n === 0;
      var name = act === 'relu' ? 'ReLU' : 'sigmoid';
      return [input, h('label', {'for': id, text: name})];
    });
    var summary = h('ul', {'class': 'xp-note', 'aria-live': 'polite'});

    root.appendChild(h('p', {'class': 'xp-title',
                             text: 'Try it: drag the learning rate'}));
    root.appendChild(h('div', {'class': 'xp-control'}, [
      h('label', {'for': sliderId, text: 'learning rate η'}), slider, rateText]));
    root.appendChild(h('fieldset', {}, [h('legend', {text: 'units'})]
      .concat(radios[0]).concat(radios[1])));
    root.appendChild(svg);
    root.appendChild(h('p', {'class': 'xp-note'}, [
      h('span', {'class': 'xp-key', style: 'color: var(--xp-red)'}), 'without BN  ',
      h('span', {'class': 'xp-key', style: 'color: var(--xp-blue)'}),
      'with BN; one line per seed, ',
      h('span', {'aria-hidden': 'true', text: '×'}), ' where a run diverged']));
    root.appendChild(summary);

    function activation() {
      return radios[0][0].checked ? 'relu' : 'sigmoid';
    }

    function update() {
      var act = activation();
      var index = Number(slider.value);
      var rate = data[act].rates[index];
      rateText.textContent = 'η = ' + rate;
      slider.setAttribute('aria-valuetext', 'η = ' + rate);
      root.setAttribute('data-rate', String(rate));
      root.setAttribute('data-activation', act);
      curves.textContent = '';
      summary.textContent = '';
      ['no_bn', 'bn'].forEach(function (name) {
        var run = data[act].runs[name].filter(function (r) {
          return r.lr === rate;
        })[0];
        if (!run) return;
        var words = [];
        run.curves.forEach(function (curve, seed) {
          var pts = curve.map(function (acc, n) {
            return px(run.steps[n]).toFixed(2) + ',' + py(acc).toFixed(2);
          });
          var css = name === 'bn' ? 'xp-bn' : 'xp-no-bn';
          curves.appendChild(s('polyline', {
            points: pts.join(' '), 'class': css, 'data-series': name,
            'data-seed': run.seeds[seed], 'data-rate': rate}));
          var stopped = run.diverged_at[seed];
          var end = curve[curve.length - 1];
          if (stopped !== null) {
            // The cross sits on the last recorded point: where the run's record stops
            var cx = px(run.steps[curve.length - 1]), cy = py(end);
            curves.appendChild(s('path', {
              d: 'M' + (cx - 4) + ',' + (cy - 4) + 'l8,8m0,-8l-8,8',
              'class': css + ' xp-cross', 'data-diverged-at': stopped
            }, [s('title', {text: NAMES[name] + ', seed ' + run.seeds[seed] +
                                  ': diverged at step ' + stopped})]));
            words.push('seed ' + run.seeds[seed] + ' diverged at step ' + stopped);
          } else {
            words.push('seed ' + run.seeds[seed] + ' ends at ' +
                       X.fmt(end * 100, 1) + '%');
          }
        });
        summary.appendChild(h('li', {text: NAMES[name] + ': ' + words.join(', ')}));
      });
    }

    slider.addEventListener('input', update);
    root.addEventListener('change', update);
    update();
  }

  X.register('learning-rate', init);
})();
