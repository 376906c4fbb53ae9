# Read by ctest after the discovered GoogleTest cases (tests/CMakeLists.txt): the trainings that run
# for tens of seconds on two threads count as two processors, so `ctest -j2` never puts two of them
# side by side on a 2-core machine (QFace and EMMA together took 98 s and 79 s, over the 60-s rule;
# alone 52 s and 41 s). Running alone, they also get OpenMP's busy waits back (every other test waits
# passively, so that parallel tests do not starve each other): the tiny LiteGPT training, thousands
# of small ops, took 53 s with passive waits and 31 s with active ones.
foreach(test
    train.QFaceTraining.EveryTaskBeatsItsTrivialBaselineOnSyntheticFaces
    train.MGRRNetTraining.BeatsTheAllPositiveBaselineOnHeldOutSyntheticSubjects
    train.EmmaTraining.LearnsSyntheticAbawFarAboveTheConstantPredictor
    train.CotexTraining.LearnsSyntheticLsdAboveTheMajorityClass
    # 31 s alone, 72 s beside another test.
    vlm.VlmTraining.TinyLiteGptLearnsGroundedFindingsOnSyntheticVinDr)
  set_tests_properties(${test} PROPERTIES PROCESSORS 2 ENVIRONMENT "OMP_WAIT_POLICY=ACTIVE")
endforeach()
