include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS snaptail EXPORT snaptailTargets)
install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(SNAPTAIL_CMAKE_DIR ${CMAKE_INSTALL_DATADIR}/cmake/snaptail)
install(EXPORT snaptailTargets NAMESPACE snaptail:: DESTINATION ${SNAPTAIL_CMAKE_DIR})

configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/snaptailConfig.cmake.in
  ${PROJECT_BINARY_DIR}/snaptailConfig.cmake
  INSTALL_DESTINATION ${SNAPTAIL_CMAKE_DIR})
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/snaptailConfigVersion.cmake
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES
  ${PROJECT_SOURCE_DIR}/cmake/SnaptailSinks.cmake
  ${PROJECT_BINARY_DIR}/snaptailConfig.cmake
  ${PROJECT_BINARY_DIR}/snaptailConfigVersion.cmake
  DESTINATION ${SNAPTAIL_CMAKE_DIR})
