# jko train -> jko eval --solver learned|refine -> jko rollout on a tiny
# problem, and the refusal of an operator for another energy.
file(MAKE_DIRECTORY "${WORK}")
set(op "${WORK}/tiny.jko")
execute_process(COMMAND "${JKO}" train --energy porous-medium --m 2 --grid 16 --rounds 2 --epochs 1 --generated 4
                        --validation 1 --horizon 2 --width 4 --modes 4 --layers 1 --hidden 8 --threads 2 --quiet
                        --out "${op}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT EXISTS "${op}")
  message(FATAL_ERROR "jko train failed (${rc}): ${out} ${err}")
endif()
foreach(solver learned refine)
  execute_process(COMMAND "${JKO}" eval --case barenblatt-step --solver ${solver} --operator "${op}" --grid 24 --json
                          --threads 2
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "jko eval --solver ${solver} failed (${rc}): ${err}")
  endif()
  string(JSON drift GET "${out}" mass_drift_max)
  string(JSON minimum GET "${out}" min_density)
  if(drift GREATER 1e-10 OR minimum LESS 0)
    message(FATAL_ERROR "${solver}: mass drift ${drift}, min density ${minimum}")
  endif()
endforeach()
execute_process(COMMAND "${JKO}" eval --case gaussian-step --solver learned --operator "${op}" --grid 24
                RESULT_VARIABLE rc ERROR_VARIABLE err)
string(FIND "${err}" "trained for porous-medium" where)
if(rc EQUAL 0 OR where EQUAL -1)
  message(FATAL_ERROR "an operator for the porous medium ran the heat equation (${rc}): ${err}")
endif()
execute_process(COMMAND "${JKO}" rollout --operator "${op}" --generate bumps --grid 20 --steps 3 --out "${WORK}/frames"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT EXISTS "${WORK}/frames/frame.pvd" OR NOT EXISTS "${WORK}/frames/frame_0003.vti")
  message(FATAL_ERROR "jko rollout failed (${rc}): ${out} ${err}")
endif()
# A frame that cannot be written (its name is taken by a folder) fails the
# rollout with a message and leaves no .partial file behind.
file(MAKE_DIRECTORY "${WORK}/blocked/frame_0002.vti")
execute_process(COMMAND "${JKO}" rollout --operator "${op}" --generate bumps --grid 20 --steps 3 --out "${WORK}/blocked"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(FIND "${err}" "cannot rename" where)
if(rc EQUAL 0 OR where EQUAL -1 OR EXISTS "${WORK}/blocked/frame_0002.vti.partial")
  message(FATAL_ERROR "an unwritable frame was not reported cleanly (${rc}): ${err}")
endif()
# The wild suite and the mode-decay case with a learned operator: the JSON's
# flat keys, and the linear response of the operator (no mode grows: the
# linearised base and the gate in (0, 2) guarantee it whatever it learned).
execute_process(COMMAND "${JKO}" compare --suite wild --operator "${op}" --grid 16 --steps 2 --densities-per-family 1
                        --families photo,scan --threads 2 --json
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "jko compare --suite wild failed (${rc}): ${err}")
endif()
foreach(key mean_error worst_density_error energy_increase_frames under_resolved_frames reference_unconverged_frames
            per_family solver_seconds reference_seconds solver_over_reference_time)
  string(JSON value ERROR_VARIABLE missing GET "${out}" ${key})
  if(missing)
    message(FATAL_ERROR "key '${key}' missing from jko compare --suite wild: ${out}")
  endif()
endforeach()
string(JSON families LENGTH "${out}" per_family)
if(NOT families EQUAL 2)
  message(FATAL_ERROR "--families photo,scan gave ${families} families: ${out}")
endif()
# The reference trajectories' cache keeps which of their steps stopped
# before the reference solver's tolerance: a second run reads the
# trajectory (no reference time) and reports the same steps.
file(REMOVE_RECURSE "${WORK}/wild-cache")
foreach(run first second)
  execute_process(COMMAND "${JKO}" compare --suite wild --operator "${op}" --grid 16 --steps 2 --densities-per-family 1
                          --families photo --cache "${WORK}/wild-cache" --threads 2 --json
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "jko compare --suite wild --cache (${run} run) failed (${rc}): ${err}")
  endif()
  string(JSON seconds_${run} TYPE "${out}" reference_seconds)
  string(JSON unconverged_${run} GET "${out}" reference_unconverged_frames)
  string(JSON list_${run} GET "${out}" per_family photo densities 0 reference_unconverged_frames)
endforeach()
if(NOT seconds_first STREQUAL "NUMBER" OR NOT seconds_second STREQUAL "NULL" OR
   NOT unconverged_first STREQUAL unconverged_second OR NOT list_first STREQUAL list_second)
  message(FATAL_ERROR "the wild suite's cache: reference time ${seconds_first} then ${seconds_second}, unconverged "
                      "steps ${unconverged_first} (${list_first}) then ${unconverged_second} (${list_second})")
endif()
execute_process(COMMAND "${JKO}" eval --case mode-decay --solver learned --operator "${op}" --grid 16 --json --threads 2
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "jko eval --case mode-decay failed (${rc}): ${err}")
endif()
string(JSON growing GET "${out}" growing_modes)
string(JSON largest GET "${out}" max_abs_factor)
string(JSON ks LENGTH "${out}" modes x k)
if(NOT growing EQUAL 0 OR largest GREATER 1 OR NOT ks EQUAL 4)
  message(FATAL_ERROR "mode-decay: ${growing} growing modes, largest factor ${largest}, ${ks} wavenumbers: ${out}")
endif()
# jko configure: the Gauss-Newton corrections of a file, changed without
# touching its network; the new count is what the operator then runs (the
# rollout's JSON says so), out-of-range counts and non-operator files are
# refused, and the original file is left as it was.
set(configured "${WORK}/tiny-gn0.jko")
file(SHA256 "${op}" before)
execute_process(COMMAND "${JKO}" configure --operator "${op}" --gauss-newton 0 --out "${configured}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
file(SHA256 "${op}" after)
if(NOT rc EQUAL 0 OR NOT EXISTS "${configured}" OR NOT before STREQUAL after)
  message(FATAL_ERROR "jko configure failed or changed its input (${rc}): ${out} ${err}")
endif()
foreach(file_and_count "${op}=8" "${configured}=0")
  string(REPLACE "=" ";" pair "${file_and_count}")
  list(GET pair 0 file)
  list(GET pair 1 count)
  execute_process(COMMAND "${JKO}" rollout --operator "${file}" --generate bumps --grid 20 --steps 2 --write-every 0
                          --json --threads 2
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  string(JSON runs ERROR_VARIABLE missing GET "${out}" gauss_newton)
  if(NOT rc EQUAL 0 OR NOT runs EQUAL count)
    message(FATAL_ERROR "${file} ran ${runs} Gauss-Newton corrections, expected ${count} (${rc}): ${err}")
  endif()
endforeach()
# jko configure ARGS must fail with a message containing EXPECT.
function(expect_configure_refused expect)
  execute_process(COMMAND "${JKO}" configure ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  string(FIND "${err}" "${expect}" where)
  if(rc EQUAL 0 OR where EQUAL -1)
    message(FATAL_ERROR "jko configure ${ARGN} was not refused with '${expect}' (${rc}): ${err}")
  endif()
endfunction()
expect_configure_refused("not in range 0 to 20" --operator "${op}" --gauss-newton 21)
file(WRITE "${WORK}/not-an-operator.jko" "not an operator")
expect_configure_refused("not a JKO operator file" --operator "${WORK}/not-an-operator.jko" --gauss-newton 2)
