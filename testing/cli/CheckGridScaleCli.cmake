# The grid-scale check from the command line: a photograph's pixel detail,
# which the map-form step keeps, makes every learned frame name itself (a
# warning, `grid_scale_frames`, each certificate's `grid_scale_defect` above
# 2%); with --complete-grid-scale the learned frames are completed after
# their steps and none is named; a smooth Gaussian under `jko eval` is below
# the threshold.
set(op "${SOURCE}/data/operators/fokker-planck.jko")
set(run rollout --generate wild:photo --energy fokker-planck --grid 32 --steps 2 --solver learned --operator "${op}"
        --write-every 0 --json --threads 2)

function(frames_of json key out)
  string(JSON count ERROR_VARIABLE err LENGTH "${json}" ${key})
  if(err)
    message(FATAL_ERROR "no '${key}' in: ${json}")
  endif()
  set(${out} ${count} PARENT_SCOPE)
endfunction()

execute_process(COMMAND "${JKO}" ${run} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "jko rollout --solver learned failed (${rc}): ${err}")
endif()
frames_of("${out}" grid_scale_frames named)
string(JSON defect GET "${out}" certificate 0 grid_scale_defect)
string(FIND "${err}" "keep detail at the grid scale" warned)
if(NOT named EQUAL 2 OR defect LESS 0.02 OR warned EQUAL -1)
  message(FATAL_ERROR "the photograph's frames should be named (frames ${named}, defect ${defect}): ${err}")
endif()

execute_process(COMMAND "${JKO}" ${run} --complete-grid-scale RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "jko rollout --solver learned --complete-grid-scale failed (${rc}): ${err}")
endif()
frames_of("${out}" grid_scale_frames named)
string(JSON iterations GET "${out}" grid_scale_completion_iterations 1)
string(JSON completedDefect GET "${out}" certificate 1 grid_scale_defect)
string(FIND "${err}" "keep detail at the grid scale" warned)
# Frame 2 starts from a completed frame 1: less is left at the grid scale.
if(NOT named EQUAL 0 OR iterations LESS 1 OR NOT warned EQUAL -1 OR NOT completedDefect LESS defect)
  message(FATAL_ERROR "completed frames should not be named (frames ${named}, iterations ${iterations}, "
                      "defect of frame 2 ${completedDefect}): ${err}")
endif()

execute_process(COMMAND "${JKO}" eval --case gaussian-step --grid 32 --json RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "jko eval failed (${rc}): ${err}")
endif()
frames_of("${out}" grid_scale_frames named)
string(JSON defect GET "${out}" certificate 0 grid_scale_defect)
if(NOT named EQUAL 0 OR NOT defect LESS 0.02)
  message(FATAL_ERROR "a smooth Gaussian should not be named (defect ${defect}): ${out}")
endif()
