# Plots of the reclaimer benchmarks (scripts/run-bench.sh calls this):
#   gnuplot -e "dir='docs/img'" scripts/plot-reclaim.gp
# Reads reclaim-summary.csv and reclaim-stall-timeseries.csv from dir, writes reclaim-*.png.
if (!exists("dir")) dir = 'docs/img'
summary = dir.'/reclaim-summary.csv'
series = dir.'/reclaim-stall-timeseries.csv'

set datafile separator ','
set terminal pngcairo size 1200,900 font 'DejaVu Sans,10'
set key outside right top font ',9' samplen 2
set grid
set logscale x 2
set xrange [0.8:10]
set xtics (1, 2, 4, 8)
set xlabel 'worker threads (2 cores: 4 and 8 are oversubscribed)'

schemes = 'kovan xenium-ebr xenium-hp xenium-he urcu-memb urcu-qsbr leak'
colors = '#d62728 #1f77b4 #2ca02c #17becf #ff7f0e #9467bd #7f7f7f'
# Keep a scheme's points only in the current panel; other rows become undefined.
sel(col) = (strcol(1) eq s && strcol(2) eq ds && strcol(3) eq mx && column(4) == st) ? column(col) : NaN

do for [st = 0:1] {
  stall_txt = st ? ', one thread stalled in a critical section' : ''
  # Throughput vs threads
  set output dir.sprintf('/reclaim-throughput%s.png', st ? '-stall' : '')
  unset logscale y
  set ylabel 'Mops/s (median; bars: min-max)'
  set yrange [0:*]
  set multiplot layout 2,2 title 'Reclaimer throughput'.stall_txt
  do for [ds in 'stack map'] {
    do for [mx in 'read write'] {
      set title sprintf('%s, %s-heavy (%s%% reads)', ds eq 'stack' ? 'Treiber stack' : 'hash map', mx, mx eq 'read' ? '90' : '50')
      plot for [i = 1:words(schemes)] s = word(schemes, i) summary skip 1 \
        using 5:(sel(6)):(sel(7)):(sel(8)) with yerrorlines lw 2 pt 7 ps 0.6 \
        lc rgb word(colors, i) title s
    }
  }
  unset multiplot
  # Unreclaimed vs threads
  set output dir.sprintf('/reclaim-unreclaimed%s.png', st ? '-stall' : '')
  set logscale y
  set yrange [1:*]
  set ylabel 'average unreclaimed objects (median, log)'
  set multiplot layout 2,2 title 'Unreclaimed objects'.stall_txt
  do for [ds in 'stack map'] {
    do for [mx in 'read write'] {
      set title sprintf('%s, %s-heavy', ds eq 'stack' ? 'Treiber stack' : 'hash map', mx)
      plot for [i = 1:words(schemes)] s = word(schemes, i) summary skip 1 \
        using 5:(sel(9) + 1) with linespoints lw 2 pt 7 ps 0.6 lc rgb word(colors, i) title s
    }
  }
  unset multiplot
}

# Unreclaimed over time with one stalled thread
set output dir.'/reclaim-stall-timeseries.png'
set terminal pngcairo size 1200,500 font 'DejaVu Sans,10'
unset logscale x
set xrange [0:*]
set xtics auto
set logscale y
set yrange [10:*]
set format y '10^{%L}'
set xlabel 'seconds since the stall (a run stops at 10 M retirements or after 10 s)'
set ylabel 'unreclaimed objects (log)'
tsel(col) = (strcol(1) eq s && strcol(2) eq ds) ? column(col) : NaN
set multiplot layout 1,2 title 'Unreclaimed objects over time, 2 writer threads (50% writes) + 1 stalled thread'
do for [ds in 'stack map'] {
  set title ds eq 'stack' ? 'Treiber stack' : 'hash map'
  plot for [i = 1:words(schemes)] s = word(schemes, i) series skip 1 \
    using 5:(tsel(7) + 1) with lines lw 2 lc rgb word(colors, i) title s
}
unset multiplot
