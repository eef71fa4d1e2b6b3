# `mpirun -np 2 jko rollout --solver reference`: the steps split over two
# ranks give the frames of one process (energies to 9 digits), with the
# report's per-rank figures and certificates; a step stopped at the
# iteration cap is named. `--solver linearized` the same (12 digits: its
# split step differs from the serial one by rounding alone), with its
# Gauss-Newton corrections, `--solver learned` with and without its
# corrections, refine and auto; what is not split is refused with the
# reason.
# MPIEXEC is the launcher with its flags (a list), JKO the program, OPERATOR
# an operator file.

# The energies of frames 0-2 of two reports agree to `digits` significant
# digits (CMake has no floating-point arithmetic).
function(expect_same_energies serial split digits what)
  foreach(frame 0 1 2)
    string(JSON a GET "${serial}" energy_per_frame ${frame})
    string(JSON b GET "${split}" energy_per_frame ${frame})
    foreach(v a b)
      string(REGEX MATCH "[1-9][0-9.]*" ${v}d "${${v}}")
      string(REPLACE "." "" ${v}d "${${v}d}")
      string(SUBSTRING "${${v}d}" 0 ${digits} ${v}d)
    endforeach()
    if(NOT ad STREQUAL bd)
      message(FATAL_ERROR "${what}, frame ${frame}: energy ${b} on two ranks, ${a} on one")
    endif()
  endforeach()
endfunction()

set(args rollout --case barenblatt-flow --dim 3 --grid 16 --steps 2 --solver reference --threads 1 --write-every 0
         --json)
execute_process(COMMAND ${MPIEXEC} -np 1 "${JKO}" ${args} OUTPUT_VARIABLE serial RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "one process failed (${rc}): ${serial}")
endif()
execute_process(COMMAND ${MPIEXEC} -np 2 "${JKO}" ${args} OUTPUT_VARIABLE split ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "two ranks failed (${rc}): ${split} ${err}")
endif()
string(JSON ranks GET "${split}" ranks)
string(JSON planes GET "${split}" planes_per_rank 1)
string(JSON peak GET "${split}" peak_rss_mb_per_rank 1)
if(NOT ranks EQUAL 2 OR NOT planes EQUAL 8 OR NOT peak GREATER 0)
  message(FATAL_ERROR "the report does not describe two ranks of 8 planes: ${split}")
endif()
expect_same_energies("${serial}" "${split}" 9 "reference")
# A step stopped at the iteration cap is reported with its certificate, as
# on one process.
execute_process(COMMAND ${MPIEXEC} -np 2 "${JKO}" ${args} --max-iterations 3 OUTPUT_VARIABLE capped ERROR_VARIABLE err
                RESULT_VARIABLE rc)
string(JSON stopped GET "${capped}" unconverged_frames 0)
string(JSON estimate GET "${capped}" certificate 0 l1_error_estimate)
string(FIND "${err}" "stopped before the solver's tolerance (iteration cap 3)" where)
if(NOT rc EQUAL 0 OR NOT stopped EQUAL 1 OR NOT estimate GREATER 0 OR where EQUAL -1)
  message(FATAL_ERROR "a capped split step is not reported with its certificate (${rc}): ${capped} ${err}")
endif()
# `jko rollout` with `run_args` on one process and on two ranks: both
# succeed, the report names the solver `name`, and the frames' energies
# agree to `digits` digits.
function(expect_split_like_serial name digits)
  execute_process(COMMAND ${MPIEXEC} -np 1 "${JKO}" ${run_args} OUTPUT_VARIABLE one RESULT_VARIABLE rc)
  execute_process(COMMAND ${MPIEXEC} -np 2 "${JKO}" ${run_args} OUTPUT_VARIABLE two ERROR_VARIABLE err
                  RESULT_VARIABLE rc2)
  if(NOT rc EQUAL 0 OR NOT rc2 EQUAL 0)
    message(FATAL_ERROR "the ${name} rollout failed (${rc}, ${rc2}): ${one} ${two} ${err}")
  endif()
  string(JSON solver GET "${two}" solver)
  string(JSON ranks GET "${two}" ranks)
  if(NOT solver STREQUAL name OR NOT ranks EQUAL 2)
    message(FATAL_ERROR "the report does not describe the ${name} solver on two ranks: ${two}")
  endif()
  expect_same_energies("${one}" "${two}" ${digits} "${name}")
  set(split_report "${two}" PARENT_SCOPE)
  set(split_err "${err}" PARENT_SCOPE)
endfunction()
# The reference solver with the grid-scale completion, on an image with
# detail at the pixel scale (a porous medium: its energy is all internal):
# the frames of one process on two ranks (9
# digits), each step's conjugate-gradient iterations in the report, and a
# first frame of lower energy than the map-form step's (a completion that
# would raise it is not kept).
set(run_args rollout --generate wild:stripes --energy porous-medium --grid 32 --steps 2 --solver reference --threads 1 --write-every 0
             --json --complete-grid-scale)
expect_split_like_serial(reference 9)
string(JSON completion GET "${split_report}" grid_scale_completion_iterations 0)
string(JSON completed GET "${split_report}" energy_per_frame 1)
list(REMOVE_ITEM run_args --complete-grid-scale)
execute_process(COMMAND ${MPIEXEC} -np 2 "${JKO}" ${run_args} OUTPUT_VARIABLE mapForm RESULT_VARIABLE rc)
string(JSON mapFormEnergy GET "${mapForm}" energy_per_frame 1)
string(JSON absent ERROR_VARIABLE noKey GET "${mapForm}" grid_scale_completion_iterations)
if(NOT rc EQUAL 0 OR NOT completion GREATER 0 OR NOT completed LESS mapFormEnergy OR NOT noKey)
  message(FATAL_ERROR "the completed steps (iterations ${completion}, energy ${completed}) against the map-form "
                      "ones (energy ${mapFormEnergy}, ${rc}): ${split_report} ${mapForm}")
endif()
# The linearised step split over the ranks (its multigrid gathered below
# 32^3 nodes: the 24^3 grid's levels are gathered whole): 12 digits; with
# two Gauss-Newton corrections (and the extra ones the certificate asks
# for): 9 (the line searches' parabolas carry the sums' rounding further).
set(run_args rollout --case barenblatt-flow --dim 3 --grid 24 --steps 2 --solver linearized --threads 1
             --write-every 0 --json)
expect_split_like_serial(linearized 12)
set(run_args rollout --case barenblatt-flow --dim 3 --grid 24 --steps 2 --solver linearized --gauss-newton 2
             --threads 1 --write-every 0 --json)
expect_split_like_serial(linearized 9)
string(JSON corrections GET "${split_report}" gauss_newton)
if(NOT corrections EQUAL 2)
  message(FATAL_ERROR "the split linearized report does not give its corrections: ${split_report}")
endif()
# The learned operator split over the ranks (its network whole on every
# rank), without and with its file's corrections: 9 digits (the float32
# network can round a feature differently).
set(run_args rollout --case barenblatt-flow --dim 3 --grid 24 --steps 2 --solver learned --operator "${OPERATOR}"
             --gauss-newton 0 --threads 1 --write-every 0 --json)
expect_split_like_serial(learned 9)
set(run_args rollout --case barenblatt-flow --dim 3 --grid 24 --steps 2 --solver learned --operator "${OPERATOR}"
             --threads 1 --write-every 0 --json)
expect_split_like_serial(learned 9)
# Its frames' certificates tallied and the count said, as one process says
# it, with the corrections it took.
string(JSON counted GET "${split_report}" refinement frames)
string(JSON corrections GET "${split_report}" gauss_newton)
string(FIND "${split_err}" "learned frames fail their certificate" said)
if(NOT counted EQUAL 2 OR NOT corrections GREATER 0 OR said EQUAL -1)
  message(FATAL_ERROR "the split learned frames' certificates are not tallied and said: ${split_report} ${split_err}")
endif()
# Refine and Auto split over the ranks: the learned frames refined by the
# split reference solver's L-BFGS (Auto: those that fail their certificate,
# at a threshold of 1e-4 the second), counted as one process counts them.
foreach(solver refine auto)
  set(run_args rollout --case barenblatt-flow --dim 3 --grid 24 --steps 2 --solver ${solver} --operator
               "${OPERATOR}" --refine-iterations 3 --threshold 1e-4 --threads 1 --write-every 0 --json)
  expect_split_like_serial(${solver} 9)
  string(JSON refined GET "${split_report}" refinement refined)
  string(FIND "${split_err}" "of 2 frames refined" said)
  if(NOT refined GREATER 0 OR (solver STREQUAL "refine" AND NOT refined EQUAL 2) OR said EQUAL -1)
    message(FATAL_ERROR "the split ${solver} frames are not refined and counted: ${split_report} ${split_err}")
  endif()
endforeach()
# `jko rollout` on two ranks with the 16^3 Barenblatt flow and the further
# arguments fails, with `reason` in its message.
function(expect_refused reason)
  execute_process(COMMAND ${MPIEXEC} -np 2 "${JKO}" rollout --case barenblatt-flow --dim 3 --grid 16 --steps 1
                          --write-every 0 ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  string(FIND "${err}" "${reason}" where)
  if(rc EQUAL 0 OR where EQUAL -1)
    message(FATAL_ERROR "${ARGN} on two ranks was not refused with the reason (${rc}): ${err}")
  endif()
endfunction()
expect_refused("are not split over ranks; take quasi-Newton further corrections (0)" --solver learned --operator
               "${OPERATOR}" --further-newton 4)
expect_refused("the reference solver is what runs split over ranks" --reference-check)
message(STATUS "two ranks: ${split}")
