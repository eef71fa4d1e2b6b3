# The Auto solver and the certificates from the command line: a density far
# outside the bundled porous-medium operator's training range (mass 1 and
# peaks of 16; the operator, conditioned on D, steps it as c rho with c M a
# trained mass, whose peak is still far above the trained peaks up to 1)
# warns, naming the quantity, its value and the trained range; the learned solver says which frames fail their
# certificate; auto refines them and says so in one line; --json carries the
# per-frame certificate, refined and refine_iterations; a step that spreads
# thin strokes over many cells is said to be under-resolved.
set(op "${SOURCE}/data/operators/porous-medium.jko")
set(density "${SOURCE}/data/samples/two-bumps.vti")

function(check_keys json count)
  foreach(key certificate refined refine_iterations refine_reason)
    string(JSON length ERROR_VARIABLE err LENGTH "${json}" ${key})
    if(err OR NOT length EQUAL ${count})
      message(FATAL_ERROR "'${key}' should hold ${count} frames: ${err} ${json}")
    endif()
  endforeach()
  string(JSON descent ERROR_VARIABLE err GET "${json}" certificate 0 descent)
  string(JSON gap ERROR_VARIABLE err2 GET "${json}" certificate 0 relative_gap)
  if(err OR err2)
    message(FATAL_ERROR "a certificate lacks descent or relative_gap: ${json}")
  endif()
endfunction()

function(expect_in text part what)
  string(FIND "${text}" "${part}" where)
  if(where EQUAL -1)
    message(FATAL_ERROR "${what}: '${part}' missing from: ${text}")
  endif()
endfunction()

# Learned: warnings and the frames that fail, never silently.
execute_process(COMMAND "${JKO}" rollout --operator "${op}" --initial "${density}" --solver learned --steps 3
                        --write-every 0 --json --threads 2
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "jko rollout --solver learned failed (${rc}): ${err}")
endif()
check_keys("${out}" 3)
expect_in("${err}" "(c rho, c = " "the peak warning")
expect_in("${err}" "has a peak " "the peak warning")
expect_in("${err}" "outside the range the operator was trained on [" "the peak warning")
expect_in("${err}" "Auto solver" "the peak warning's remedy")
expect_in("${err}" "has a peak 13.6," "the peak warning")
expect_in("${err}" "learned frames fail their certificate" "the learned solver's summary")

# Auto: every failing frame refined, one line saying so.
execute_process(COMMAND "${JKO}" rollout --operator "${op}" --initial "${density}" --solver auto --steps 3
                        --write-every 0 --json --threads 2
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "jko rollout --solver auto failed (${rc}): ${err}")
endif()
check_keys("${out}" 3)
string(JSON refined GET "${out}" refinement refined)
string(JSON iterations GET "${out}" refine_iterations 0)
string(JSON reason GET "${out}" refine_reason 0)
string(JSON learned ERROR_VARIABLE learnedErr GET "${out}" learned_certificate 0 relative_gap)
if(refined LESS 1 OR iterations LESS 1 OR reason STREQUAL "none" OR learnedErr)
  message(FATAL_ERROR "auto did not refine the out-of-range frames: ${out}")
endif()
expect_in("${err}" "jko: auto: ${refined} of 3 frames refined (" "the auto summary line")
expect_in("${err}" "L-BFGS iterations" "the auto summary line")
string(JSON increase GET "${out}" energy_increase_max)
if(increase GREATER 0)
  message(FATAL_ERROR "auto frames raised the energy by ${increase}")
endif()

# eval: the same keys, and the reference solver's own final measure.
execute_process(COMMAND "${JKO}" eval --case barenblatt-step --solver auto --operator "${op}" --grid 32 --json --threads 2
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "jko eval --solver auto failed (${rc}): ${err}")
endif()
check_keys("${out}" 1)
expect_in("${err}" "jko: auto:" "the eval summary line")
execute_process(COMMAND "${JKO}" eval --case barenblatt-step --solver reference --grid 32 --json --threads 2
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
check_keys("${out}" 1)
string(JSON measure GET "${out}" certificate 0 gradient_measure)
if(NOT rc EQUAL 0 OR measure GREATER 1e-7)
  message(FATAL_ERROR "the reference solver's certificate should meet its own tolerance: ${out}")
endif()

# --reference-check: per frame the reference step from the frame's own input,
# its distance to the frame and its objective J. The reference solver checked
# against itself is 0 apart; the reference step's J lies in (0, J(0)) (the
# porous-medium energy and the transport cost are non-negative, and the
# step descends).
foreach(solver reference learned)
  if(solver STREQUAL "reference")
    set(problem --energy porous-medium --peak 0.3)
  else()
    set(problem --operator "${op}")
  endif()
  execute_process(COMMAND "${JKO}" rollout ${problem} --generate bumps --grid 32 --solver ${solver} --steps 2
                          --write-every 0 --reference-check --json --threads 2
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "jko rollout --solver ${solver} --reference-check failed (${rc}): ${err}")
  endif()
  foreach(key reference_rel_l1 reference_ms reference_objective)
    string(JSON length ERROR_VARIABLE e LENGTH "${out}" ${key})
    if(e OR NOT length EQUAL 2)
      message(FATAL_ERROR "--reference-check: '${key}' should hold 2 frames: ${e} ${out}")
    endif()
  endforeach()
  foreach(k 0 1)
    string(JSON l1 GET "${out}" reference_rel_l1 ${k})
    string(JSON jReference GET "${out}" reference_objective ${k})
    string(JSON jStay GET "${out}" certificate ${k} initial_objective)
    if(NOT jReference LESS jStay OR NOT jReference GREATER 0)
      message(FATAL_ERROR "frame ${k}: the reference step's J ${jReference} should be in (0, J(0) = ${jStay})")
    endif()
    if(solver STREQUAL "reference" AND l1 GREATER 1e-12)
      message(FATAL_ERROR "the reference solver against its own check: ${l1} apart (frame ${k})")
    elseif(solver STREQUAL "learned" AND NOT l1 GREATER 0)
      message(FATAL_ERROR "a learned frame equal to the reference step to the last bit (frame ${k}): the check "
                          "compared a frame with itself")
    endif()
  endforeach()
endforeach()

# The resolution check: thin strokes at 256^2 spread over many cells in one
# Fokker-Planck step; the frame is under-resolved whatever its certificate.
execute_process(COMMAND "${JKO}" rollout --operator "${SOURCE}/data/operators/fokker-planck.jko" --generate wild:strokes
                        --seed 3 --grid 256 --mass 1 --steps 1 --write-every 0 --json --threads 2
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "jko rollout from strokes at 256^2 failed (${rc}): ${err}")
endif()
string(JSON count LENGTH "${out}" under_resolved_frames)
string(JSON share GET "${out}" certificate 0 spread_mass_fraction)
if(NOT count EQUAL 1 OR share LESS 0.25)
  message(FATAL_ERROR "the strokes' first frame should be under-resolved (share ${share}): ${out}")
endif()
expect_in("${err}" "1 of 1 frames (1) are under-resolved" "the resolution warning")
expect_in("${err}" "Lower the time step" "the resolution warning's remedy")

# The reference solver: steps stopped before its tolerance by the iteration
# cap are named, with how far their certificates put them; a run that
# converges says nothing of the kind.
foreach(cap 3 2000)
  execute_process(COMMAND "${JKO}" rollout --generate smooth-field --grid 32 --energy fokker-planck --steps 2
                          --max-iterations ${cap} --write-every 0 --json --threads 2
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "jko rollout --solver reference --max-iterations ${cap} failed (${rc}): ${err}")
  endif()
  string(JSON stopped LENGTH "${out}" unconverged_frames)
  string(JSON iterations GET "${out}" iterations 0)
  string(FIND "${err}" "stopped before the solver's tolerance" said)
  if(cap EQUAL 3)
    if(NOT stopped EQUAL 2 OR NOT iterations EQUAL 3)
      message(FATAL_ERROR "both steps should stop at 3 iterations (${iterations}, ${stopped} named): ${out}")
    endif()
    expect_in("${err}" "2 of 2 reference steps (frames 1, 2) stopped before the solver's tolerance (iteration cap 3)"
              "the capped steps' warning")
    # The figure itself is checked against the Per-frame Table in the
    # plugin's TestReferenceFlow.py (CMake has no floating-point arithmetic).
    string(REGEX MATCH "their certificates estimate them at most [0-9.]*[1-9][0-9.e+-]*% \\(relative L1\\)" said
                 "${err}")
    if(NOT said)
      message(FATAL_ERROR "the warning should give the largest certificate: ${err}")
    endif()
  elseif(NOT stopped EQUAL 0 OR NOT said EQUAL -1 OR iterations GREATER_EQUAL 2000)
    message(FATAL_ERROR "a converged run should name no step (${stopped} named, ${iterations} iterations): ${err}")
  endif()
endforeach()
