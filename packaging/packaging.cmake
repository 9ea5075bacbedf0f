# Install layout (cmake --install) and the Debian package (cpack -G DEB), included last by
# the top-level CMakeLists.txt. docs/operations.md describes both.
#
#   bin/                         recschedd, recschedctl, recsched-profile, recsched-engine
#   lib/systemd/system/          recschedd.service (ExecStart and --config follow the prefix)
#   lib/sysusers.d/recsched.conf the system user
#   /etc/recsched/recschedd.json the example config (PREFIX/etc unless the prefix is /usr);
#                                a conffile in the package
#   share/recsched/models/       the model zoo's specs, which the config names
#   share/recsched/60-recsched-rapl.rules  opt-in udev rule: group recsched reads RAPL
#   share/recsched/60-recsched-cpu-latency.rules  opt-in udev rule: group recsched may
#                                          hold the CPU latency QoS (limits.cpu_latency_us)
#   share/doc/recsched/          README, operations, API
install(TARGETS recschedd recschedctl recsched-profile recsched-engine RUNTIME DESTINATION bin)
install(CODE "set(RECSCHED_SOURCE_DIR \"${PROJECT_SOURCE_DIR}\")\nset(RECSCHED_BINARY_DIR \"${PROJECT_BINARY_DIR}\")")
install(SCRIPT "${PROJECT_SOURCE_DIR}/packaging/install-configured.cmake")
install(FILES systemd/sysusers.conf DESTINATION lib/sysusers.d RENAME recsched.conf)
file(GLOB RECSCHED_MODEL_SPECS "${PROJECT_SOURCE_DIR}/models/*.json")
install(FILES ${RECSCHED_MODEL_SPECS} DESTINATION share/recsched/models)
install(FILES systemd/60-recsched-rapl.rules DESTINATION share/recsched)
install(FILES systemd/60-recsched-cpu-latency.rules DESTINATION share/recsched)
install(FILES README.md docs/operations.md docs/api.md DESTINATION share/doc/recsched)

# The Debian package. Built for Debian 12 (bookworm).
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "recsched")
set(CPACK_PACKAGE_VENDOR "recsched")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "heterogeneity-aware scheduler daemon for recommendation inference")
set(CPACK_PACKAGE_DESCRIPTION
    "recschedd discovers a host's CPUs and GPUs, profiles each recommendation model on each, and places every query so that each model meets its tail-latency target at the least power. It serves the KServe v2 HTTP protocol; recschedctl shows what it is doing.")
set(CPACK_PACKAGE_CONTACT "recsched maintainers <recsched@localhost>")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION "science")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
# Absolute install paths (/etc) go through DESTDIR into the package, never onto this host;
# and the install scripts see the package's prefix, /usr.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX "/usr")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)
# Debian 12's packages for what the binaries link, as dpkg-shlibdeps names them
# (check-deb.sh compares the two, so a new library cannot be forgotten, and checks the
# versions against what this host has installed). Not dpkg-shlibdeps at
# package time: with CUDA the tools also link NVIDIA's libcublas, which no Debian package
# provides, and dpkg-shlibdeps refuses to finish. adduser and init-system-helpers are
# for the maintainer scripts.
set(RECSCHED_DEB_DEPENDS
    "libc6 (>= 2.34), libgcc-s1 (>= 3.0), libstdc++6 (>= 12), libgomp1 (>= 4.2.1), libdnnl2 (>= 2.0), libhwloc15 (>= 2.9.0), libspdlog1.10-fmt9, libfmt9 (>= 9.1.0+ds1)")
set(CPACK_DEBIAN_PACKAGE_DEPENDS "${RECSCHED_DEB_DEPENDS}, adduser, init-system-helpers (>= 1.54)")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${PROJECT_SOURCE_DIR}/packaging/debian/postinst"
    "${PROJECT_SOURCE_DIR}/packaging/debian/prerm"
    "${PROJECT_SOURCE_DIR}/packaging/debian/postrm"
    "${PROJECT_SOURCE_DIR}/packaging/debian/conffiles")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_PACKAGE_DIRECTORY "${PROJECT_BINARY_DIR}/packages")
include(CPack)
