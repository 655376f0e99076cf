"""selu_deep_stack's figures."""

from __future__ import annotations

from experiments import plots


def selu_stack_figures(
  results: list[dict], out_dir: str, model: dict
) -> list[str]:
  """selu_deep_stack's figures; returns the paths written.

  stats_main.png, stats_controls.png and stats_recovery_dropout.png (the
  configurations of each role): per layer, the mean and std over units
  and samples, measured (solid) against the theory's moment map (dashed,
  hollow markers), a configuration per colour and marker; grey: +-3 SD of
  one layer at the fixed point. gradients.png: the squared gradient norm
  per layer (main and dropout configurations), each in its own style.

  Args:
    results: `stack.evaluate`'s rows.
    out_dir: where the PNGs go.
    model: `self_normalization.finite_size_model` of the run.
  """
  import numpy as np

  roles = {
    'stats_main.png': (('main',), 'no main configuration'),
    'stats_controls.png': (('control',), 'no control configuration'),
    'stats_recovery_dropout.png': (
      ('recovery', 'dropout'),
      'no recovery or dropout configuration',
    ),
  }
  paths = []
  band_mean, band_std = 3 * model['sd_layer_mean'], 3 * model['sd_layer_std']
  for filename, (role, why) in roles.items():
    group = [r for r in results if r['role'] in role]
    styles = plots.distinct_styles([r['name'] for r in group], linestyle='-')
    mean, std = [], []
    for r, s in zip(group, styles, strict=True):
      p = r['per_layer']
      layers = np.arange(1, len(p['mean']) + 1)
      theory = {**s, 'linestyle': '--', 'hollow': True}
      mean.append(plots.Line(layers, p['mean'], r['name'], **s))
      mean.append(plots.Line(layers, p['predicted_mean'], **theory))
      std.append(plots.Line(layers, p['std'], r['name'], **s))
      std.append(plots.Line(layers, p['predicted_std'], **theory))
    panels = [
      plots.Panel(
        mean,
        xlabel='layer',
        ylabel='mean over units and samples',
        hspan=(-band_mean, band_mean),
        ylim=(-1.5, 1.5),
      ),
      plots.Panel(
        std,
        xlabel='layer',
        ylabel='std over units and samples',
        hspan=(1 - band_std, 1 + band_std),
        ylog=True,
      ),
    ]
    path = plots.figure(
      panels,
      f'{out_dir}/{filename}',
      size=(6.5, 4.5),
      suptitle='measured (solid) vs theory (dashed, hollow markers); grey: '
      '+-3 SD of one layer at the fixed point (finite_size_model); '
      '^ v: off the axes; x: the theory overflows',
      why_empty=f'{why} in this run',
    )
    paths += [path] if path else []
  group = [r for r in results if r['role'] in ('main', 'dropout')]
  lines = []
  for r, s in zip(
    group, plots.distinct_styles([r['name'] for r in group]), strict=True
  ):
    g = np.asarray(r['per_layer']['grad_sq_norm'], np.float64)
    with np.errstate(all='ignore'):
      lines.append(
        plots.Line(np.arange(1, g.size + 1), g / g[-1], r['name'], **s)
      )
  panel = plots.Panel(
    lines,
    title='backward pass: gradient norm against depth',
    xlabel='layer',
    ylabel='squared gradient norm / top layer',
    ylog=True,
  )
  path = plots.figure(
    [panel],
    f'{out_dir}/gradients.png',
    size=(7, 4.5),
    why_empty='no main or dropout configuration in this run',
  )
  return paths + ([path] if path else [])
