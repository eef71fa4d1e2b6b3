# Runs `jko eval --json` on a small grid and checks the keys of the contract.
execute_process(COMMAND "${JKO}" eval --case barenblatt-flow --solver reference --grid 24 --steps 3 --json --threads 2
                OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "jko eval failed (${rc}): ${out}")
endif()
foreach(key case solver grid dim tau steps rel_l1 rel_l1_final rel_l1_jko rel_l1_jko_final ms_per_step_median
            mass_drift_max min_density)
  string(JSON value ERROR_VARIABLE err GET "${out}" ${key})
  if(err)
    message(FATAL_ERROR "key '${key}' missing from jko eval --json: ${out}")
  endif()
endforeach()
string(JSON steps LENGTH "${out}" rel_l1)
if(NOT steps EQUAL 3)
  message(FATAL_ERROR "rel_l1 has ${steps} entries, expected 3")
endif()
execute_process(COMMAND "${JKO}" eval --case gaussian-step --grid 24 --json --threads 2 OUTPUT_VARIABLE out RESULT_VARIABLE rc)
string(JSON value ERROR_VARIABLE err GET "${out}" step_error_final)
if(err OR NOT rc EQUAL 0)
  message(FATAL_ERROR "one-step case lacks step_error_final: ${out}")
endif()
execute_process(COMMAND "${JKO}" eval --case ou-steady --grid 24 --steps 5 --json --threads 2 OUTPUT_VARIABLE out RESULT_VARIABLE rc)
string(JSON value ERROR_VARIABLE err GET "${out}" variance_error)
if(err OR NOT rc EQUAL 0)
  message(FATAL_ERROR "ou-steady lacks variance_error: ${out}")
endif()
# The mode-decay case: per direction the factors of the solver, the reference
# solver and the formula, and the gates; the linearised solver against the
# reference within 0.05 for k <= n/4 on a 16^2 grid.
execute_process(COMMAND "${JKO}" eval --case mode-decay --solver linearized --grid 16 --json --threads 2
                OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mode-decay failed (${rc}): ${out}")
endif()
foreach(key max_abs_factor growing_modes solver_reference_max_abs_diff reference_formula_max_rel_error gates)
  string(JSON value ERROR_VARIABLE err GET "${out}" ${key})
  if(err)
    message(FATAL_ERROR "key '${key}' missing from mode-decay: ${out}")
  endif()
endforeach()
foreach(direction x y diagonal)
  string(JSON n ERROR_VARIABLE err LENGTH "${out}" modes ${direction} solver)
  if(err OR NOT n EQUAL 4)
    message(FATAL_ERROR "mode-decay direction ${direction}: ${n} factors: ${out}")
  endif()
endforeach()
string(JSON diff GET "${out}" solver_reference_max_abs_diff)
if(diff GREATER 0.05)
  message(FATAL_ERROR "the linearised step is ${diff} from the reference solver's mode factors: ${out}")
endif()
# The resolution check in eval: the gaussian-step case at ten times its time
# step spreads all its mass apart (2.6% off the exact step, where tau = 0.02
# is 0.45% off and not flagged).
execute_process(COMMAND "${JKO}" eval --case gaussian-step --grid 64 --tau 0.05 --json --threads 2
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
string(JSON count ERROR_VARIABLE missing LENGTH "${out}" under_resolved_frames)
string(FIND "${err}" "1 of 1 frames (1) are under-resolved" said)
if(NOT rc EQUAL 0 OR missing OR NOT count EQUAL 1 OR said EQUAL -1)
  message(FATAL_ERROR "gaussian-step at tau 0.05 should be under-resolved and said so: ${err} ${out}")
endif()
execute_process(COMMAND "${JKO}" eval --case gaussian-step --grid 64 --tau 0.02 --json --threads 2
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
string(JSON count ERROR_VARIABLE missing LENGTH "${out}" under_resolved_frames)
if(NOT rc EQUAL 0 OR missing OR NOT count EQUAL 0)
  message(FATAL_ERROR "gaussian-step at tau 0.02 is resolved: ${err} ${out}")
endif()
# A case asked for other energy parameters steps that energy (its exact answer
# holds for them), and one it cannot take is refused, never ignored.
execute_process(COMMAND "${JKO}" eval --case ou-step --D 0.05 --potential-strength 10 --grid 24 --json --threads 2
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
string(JSON spec ERROR_VARIABLE missing GET "${out}" energy_spec)
if(NOT rc EQUAL 0 OR missing OR NOT spec MATCHES "D=0.05; quadratic potential a=10")
  message(FATAL_ERROR "ou-step with --D 0.05 --potential-strength 10 should step that energy: ${err} ${out}")
endif()
foreach(args "gaussian-step;--attraction;5" "ou-step;--kernel;quadratic" "barenblatt-flow;--m;1")
  execute_process(COMMAND "${JKO}" eval --case ${args} --grid 16 --json OUTPUT_VARIABLE out ERROR_VARIABLE err
                  RESULT_VARIABLE rc)
  if(rc EQUAL 0 OR NOT err MATCHES "error: invalid")
    message(FATAL_ERROR "eval --case ${args} should be refused with a reason: ${err} ${out}")
  endif()
endforeach()
